"""Sending one message to a few people: the compose form, the submission (recorded before
Plivo hears of it), dispatch off the request path with its retries, and the media probe."""
