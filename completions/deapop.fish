complete -c deapop -l config -d 'Configuration file [default: /etc/apoptools.conf]' -r -F
complete -c deapop -l enable -d 'Enable POP logins again for the USERs (remove their disable marks)'
complete -c deapop -l purge -d 'Disable the USERs and delete their ~/.apop and ~/.apop-* files'
complete -c deapop -l list -d 'List every account with a stored password or a disable mark'
complete -c deapop -l json -d 'With --list: print a JSON array instead of a table'
complete -c deapop -s h -l help -d 'Print help (see more with \'--help\')'
complete -c deapop -s V -l version -d 'Print version'
