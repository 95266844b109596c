"""The overview (the landing page): a period's figures from the per-day rollups, and the
admins' health page (callbacks, sending, a test message)."""
