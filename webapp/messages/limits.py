"""What one MMS may carry, as Plivo states it (PLIVO.md: `text`, `media_urls`, the Media
API): every form, list and upload checks against these numbers."""

MAX_TEXT = 1600  # characters in an MMS's text
MAX_MEDIA = 10  # items (pictures, clips, files) in one message
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024  # Plivo: 2 MB per attachment
