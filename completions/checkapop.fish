complete -c checkapop -l config -d 'Configuration file [default: /etc/apoptools.conf]' -r -F
complete -c checkapop -l dovecot -d 'Answer Dovecot\'s checkpassword passdb (PROG is its checkpassword-reply)'
complete -c checkapop -s h -l help -d 'Print help (see more with \'--help\')'
complete -c checkapop -s V -l version -d 'Print version'
