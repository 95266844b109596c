"""Pictures and files from the staff's own devices: checked by content, prepared for
carriers, stored once by their sha256, the team's library, uploaded to Plivo's Media API."""
