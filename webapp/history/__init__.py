"""The history of everything sent: filters and keyset pages, the search indexes, the live
rows, one message with its timeline, and the CSV export."""
