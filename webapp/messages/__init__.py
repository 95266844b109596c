"""What every capability shares about a message, with no routes of its own: what one MMS
may carry (limits), how a message's facts read on a page (presentation), and the team's
opt-out list. The record itself is webapp.models.messages; its states, webapp.statuses."""
