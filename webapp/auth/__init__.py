"""Who may do what: sign-in with a password and an optional second factor, sessions kept
in the database, throttling, your own account, and the admins' staff accounts."""
