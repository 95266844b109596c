"""Files staff attach from their own computer or phone: checked by content, prepared for
carriers, stored once, uploaded to Plivo's Media API when a message using them is sent.

Pictures (JPEG, PNG, GIF, and WebP/BMP/TIFF converted) are decoded with Pillow: a file
that is not what it claims, is cut short or is a decompression bomb is refused with the
reason. Every static picture loses its metadata (EXIF, GPS, XMP, comments: privacy), is
turned the way its EXIF orientation says, and is re-encoded down to CARRIER_BYTES
(600 KB, the strictest US carrier guidance) by quality first, then size, never below
640 px on its longest side. An animated GIF is kept as it is (re-encoding frames is
where quality goes), within Plivo's 2 MB. Clips, sounds, PDFs and contact cards are
recognised by their first bytes (filetype) and kept as they are, within 2 MB.

Pillow is imported when a file is prepared, not when the app starts: most web workers
never prepare one, and the import costs each ~10 MB.
"""

from __future__ import annotations

import hashlib
import io
import logging
import unicodedata
import warnings
from dataclasses import dataclass, field

from webapp.messages.limits import MAX_ATTACHMENT_BYTES
from webapp.messages.presentation import filesize

log = logging.getLogger(__name__)

CARRIER_BYTES = 600 * 1024
MIN_LONGEST_SIDE = 640
# Decoded pixels we accept. JPEGs are decoded at a reduced scale (draft) so a 48 MP
# phone photo costs little; other formats decode whole, hence their lower limit.
MAX_JPEG_PIXELS = 50_000_000
MAX_OTHER_PIXELS = 24_000_000
THUMBNAIL_SIDE = 240

PICTURE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif"}
CONVERTED = {"WEBP", "BMP", "TIFF"}  # decoded and sent as JPEG (or PNG with transparency)
# Sent as they are, recognised by their first bytes (PLIVO.md section 2's list). The
# extension is what the SDK's upload would derive the type from.
KEPT_AS_IS = {
    "video/mp4": "mp4", "video/3gpp": "3gpp", "video/mpeg": "mpeg", "audio/mpeg": "mp3",
    "audio/ogg": "ogg", "audio/x-wav": "wav", "audio/wav": "wav", "application/pdf": "pdf",
}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
              "text/vcard": "vcard", **KEPT_AS_IS}
ACCEPT = ("image/jpeg,image/png,image/gif,image/webp,image/bmp,image/tiff,video/mp4,"
          "video/3gpp,audio/mpeg,audio/ogg,audio/wav,application/pdf,text/vcard,"
          ".jpg,.jpeg,.png,.gif,.webp,.mp4,.3gp,.mp3,.ogg,.wav,.pdf,.vcf")


# What a file's extension claims it holds; the content must agree.
CLAIMS = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic"),
                    "image"),
    **dict.fromkeys(("mp4", "3gp", "3gpp", "mpeg", "mpg", "mov"), "video"),
    **dict.fromkeys(("mp3", "ogg", "wav", "m4a"), "audio"),
    "pdf": "document",
}


def _a(kind: str) -> str:
    return {"image": "a picture", "video": "a video", "audio": "a sound",
            "document": "a PDF document"}.get(kind, kind)


class UploadRefused(ValueError):
    """The file cannot be sent; the message says why, in plain words."""


@dataclass
class Prepared:
    data: bytes
    content_type: str
    original_name: str
    original_size: int
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def clean_name(name: str | None) -> str:
    """The file's name as people see it: no path, no control characters, 120 at most."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name)
                   if unicodedata.category(c)[0] != "C").strip()
    return name[:120] or "file"


def prepare(data: bytes, name: str | None) -> Prepared:
    """Check one uploaded file by its content and make it ready to send."""
    name = clean_name(name)
    if not data:
        raise UploadRefused(f"{name} is empty.")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        raise UploadRefused(f"{name} is an SVG drawing, which MMS cannot carry (and may hold "
                            "scripts). Export it as PNG or JPEG.")
    if head.startswith(b"begin:vcard"):
        return _kept(data, name, "text/vcard")
    import filetype  # here, not at the top: see the module docstring

    kind = filetype.guess(data)
    if kind is None:
        raise UploadRefused(f"{name} is not a picture, clip or document MMS can carry.")
    claimed = CLAIMS.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None
    held = "document" if kind.mime == "application/pdf" else kind.mime.split("/")[0]
    if claimed and claimed != held:
        raise UploadRefused(f"{name} is named like {_a(claimed)} but holds {_a(held)} "
                            f"({kind.mime}). Attach the file itself, not a renamed one.")
    if kind.mime in ("image/heic", "image/heif", "image/avif"):
        raise UploadRefused(f"{name} is a {kind.extension.upper()} photo, which phones "
                            "outside Apple's cannot show. Choose JPEG (\"Most Compatible\") "
                            "in the camera's settings, or export it as JPEG.")
    if kind.mime.startswith("image/"):
        return _picture(data, name)
    if kind.mime in KEPT_AS_IS:
        return _kept(data, name, kind.mime)
    raise UploadRefused(f"{name} is {kind.mime}, which MMS cannot carry. Attach pictures "
                        "(JPEG, PNG, GIF), clips (MP4, 3GP), sounds (MP3, OGG, WAV), PDFs "
                        "or contact cards.")


def _kept(data: bytes, name: str, content_type: str) -> Prepared:
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise UploadRefused(f"{name} is {filesize(len(data))}; MMS allows 2 MB per file.")
    prepared = Prepared(data, content_type, name, len(data))
    if len(data) > CARRIER_BYTES:
        prepared.notes.append(f"{filesize(len(data))}: some carriers shrink or drop attachments "
                              "over 600 KB.")
    return prepared


def _picture(data: bytes, name: str) -> Prepared:
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS  # Pillow warns above it, refuses at twice
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            limit = MAX_JPEG_PIXELS if image.format == "JPEG" else MAX_OTHER_PIXELS
            if pixels > limit:
                raise UploadRefused(
                    f"{name} is {image.width:,} by {image.height:,} pixels; the most we take "
                    f"is {limit // 1_000_000} megapixels. Make it smaller first.")
            if image.format not in PICTURE_TYPES and image.format not in CONVERTED:
                raise UploadRefused(f"{name} is a {image.format} picture, which MMS cannot "
                                    "carry. Export it as JPEG or PNG.")
            if image.format == "GIF" and getattr(image, "is_animated", False):
                return _animated_gif(image, data, name)
            if image.format == "JPEG":
                image.draft("RGB", (4096, 4096))  # decode at a reduced scale if huge
            image.load()
        except UploadRefused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadRefused(f"{name} unpacks to more than {MAX_JPEG_PIXELS // 1_000_000} "
                                "megapixels, far more than a picture has (a decompression "
                                "bomb).") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UploadRefused(f"{name} is damaged or cut short and cannot be read.") from exc
    source_format = image.format
    metadata = bool(image.getexif()) or any(
        key in image.info for key in ("xmp", "XML:com.adobe.xmp", "comment", "Comment"))
    if source_format in PICTURE_TYPES and not metadata and len(data) <= CARRIER_BYTES:
        # Already small, nothing private in it: sent as it came.
        prepared = Prepared(data, PICTURE_TYPES[source_format], name, len(data),
                            image.width, image.height)
        prepared.thumbnail = _thumbnail(image)
        return prepared
    image = ImageOps.exif_transpose(image)
    transparent = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if transparent:
        image = image.convert("RGBA")
        content_type, encoder = "image/png", _png
    else:
        image = image.convert("RGB")
        content_type, encoder = "image/jpeg", _jpeg
    icc = image.info.get("icc_profile")
    out = _shrink(image, encoder, icc)
    final = Image.open(io.BytesIO(out))
    prepared = Prepared(out, content_type, name, len(data), final.width, final.height)
    prepared.thumbnail = _thumbnail(image)
    if len(out) < len(data) * 0.95 or (final.width, final.height) != image.size:
        prepared.notes.append(f"resized from {filesize(len(data))}")
    if metadata:
        prepared.notes.append("location and camera data removed")
    return prepared


def _jpeg(image, quality: int, icc: bytes | None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True,
               **({"icc_profile": icc} if icc else {}))
    return buffer.getvalue()


def _png(image, quality: int, icc: bytes | None) -> bytes:
    buffer = io.BytesIO()
    if quality < 80:  # PNG has no quality: fewer colours instead
        image = image.quantize(256)
    image.save(buffer, "PNG", optimize=True, **({"icc_profile": icc} if icc else {}))
    return buffer.getvalue()


def _shrink(image, encoder, icc: bytes | None) -> bytes:
    """Down to CARRIER_BYTES: quality first, then size, not below MIN_LONGEST_SIDE."""
    from PIL import Image

    longest = max(image.size)
    if longest > 2048:  # no phone shows more; a first cut makes the ladder quick
        image = image.copy()
        image.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    out = b""
    while True:
        for quality in (88, 80, 72, 64):
            out = encoder(image, quality, icc)
            if len(out) <= CARRIER_BYTES:
                return out
        longest = max(image.size)
        if longest <= MIN_LONGEST_SIDE:
            break
        side = max(MIN_LONGEST_SIDE, int(longest * 0.75))
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    for quality in (55, 45, 35):  # at 640 px: lower quality still, as the last resort
        out = encoder(image, quality, icc)
        if len(out) <= CARRIER_BYTES:
            return out
    raise UploadRefused(f"the picture cannot be made smaller than {filesize(len(out))} at "
                        f"{MIN_LONGEST_SIDE} px")


def _animated_gif(image, data: bytes, name: str) -> Prepared:
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise UploadRefused(f"{name} is an animated GIF of {filesize(len(data))}; MMS allows "
                            "2 MB, and its frames cannot be shrunk without spoiling them. "
                            "Use a shorter or smaller animation.")
    prepared = Prepared(data, "image/gif", name, len(data), image.width, image.height)
    prepared.thumbnail = _thumbnail(image)
    if len(data) > CARRIER_BYTES:
        prepared.notes.append(f"animated, {filesize(len(data))}: some carriers shrink or drop "
                              "attachments over 600 KB")
    return prepared


def _thumbnail(image) -> bytes:
    from PIL import Image

    small = image.copy()
    if small.mode not in ("RGB", "L"):
        backdrop = Image.new("RGB", small.size, "white")
        rgba = small.convert("RGBA")
        backdrop.paste(rgba, mask=rgba.getchannel("A"))
        small = backdrop
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


