"""Replies (issue 35): what customers send to our numbers, kept once and read at once for
STOP, START and HELP (inbound, keywords); their pictures fetched by a worker (followup);
the inbox and each customer's thread (threads), and staff's answers (replies)."""
