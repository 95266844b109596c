"""The audit log's pages: who did what, when, from where, filtered and exported. What an
entry is and how one is recorded is webapp/audit.py, which every capability calls."""
