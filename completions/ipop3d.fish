complete -c ipop3d -l config -d 'Configuration file [default: /etc/apoptools.conf]' -r -F
complete -c ipop3d -l uidl-report -d 'Print the UIDL list ipop3d will present to USER (an address, U-EXT included), one `N UIDL` line per message in session order, without taking the lock, moving, measuring or writing anything, and exit: diff it against the old server\'s UIDL listing before a switch (uidl_compat)' -r
complete -c ipop3d -l implicit-tls -d 'TLS from the first byte (RFC 8314, port 995), with the configuration\'s tls_cert and tls_key; needs ipop3d started as root'
complete -c ipop3d -l fail2ban-filter -d 'Print a fail2ban filter for ipop3d\'s log lines and exit'
complete -c ipop3d -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipop3d -s V -l version -d 'Print version'
