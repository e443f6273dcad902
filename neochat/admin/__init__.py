"""``neochatctl``: the administrator's tool (accounts, sessions, bans,
groups, stats, checks, backups), live through the admin socket or offline
on the database."""
