complete -c apoppassd -l config -d 'Configuration file [default: /etc/apoptools.conf]' -r -F
complete -c apoppassd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c apoppassd -s V -l version -d 'Print version'
