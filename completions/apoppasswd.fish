complete -c apoppasswd -l config -d 'Configuration file [default: /etc/apoptools.conf]' -r -F
complete -c apoppasswd -l ext -d 'Act on the extension address USER-EXT (file ~/.apop-EXT)' -r
complete -c apoppasswd -l length -d 'Length of the --generate password [default: 16]' -r
complete -c apoppasswd -l stdin -d 'Read the password from the first line of standard input, no prompt'
complete -c apoppasswd -l batch -d 'Root: read "user:password" lines (user may be user-EXT) from standard input; nothing is written unless every line is valid'
complete -c apoppasswd -l generate -d 'Store a random password and print it once on standard output'
complete -c apoppasswd -l check -d 'Exit 0 if the typed (or --stdin) password matches the stored one, 1 if not'
complete -c apoppasswd -l status -d 'Show whether a password is set, when and by whom it was changed, and whether the account is disabled'
complete -c apoppasswd -l delete -d 'Remove the stored password'
complete -c apoppasswd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c apoppasswd -s V -l version -d 'Print version'
