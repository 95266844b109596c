"""Sending to a list: the list file read, a draft previewed and priced, confirmed in one
transaction, sent in lanes that give way to single sends, paused, cancelled, reported;
and the admins' opt-out page and approval limits."""
