"""Who is calling: accounts, passwords, sessions and tokens, the one permission table, and the
request hook that resolves a caller and refuses what its role may not do."""
