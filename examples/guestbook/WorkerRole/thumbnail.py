"""Making a thumbnail with Pillow: at most SIZE × SIZE pixels, JPEG, upright (EXIF orientation)."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

SIZE = 160
MAX_PIXELS = 40_000_000
"""Pictures with more pixels are refused (a 4 MB file can claim a huge canvas)."""


class ThumbnailError(ValueError):
    """The picture cannot be made into a thumbnail (not an image, damaged, too large)."""


def make_thumbnail(data: bytes, size: int = SIZE) -> bytes:
    """A JPEG thumbnail of ``data`` (any format Pillow reads) that fits in ``size`` × ``size``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ThumbnailError(
                        f"The picture is {image.width} × {image.height} pixels; at most "
                        f"{MAX_PIXELS:,} pixels are accepted."
                    )
                image.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale
                frame = ImageOps.exif_transpose(image)
                frame.thumbnail((size, size), Image.Resampling.LANCZOS)
                if frame.mode in ("RGBA", "LA") or (
                    frame.mode == "P" and "transparency" in frame.info
                ):
                    rgba = frame.convert("RGBA")
                    flat = Image.new("RGB", rgba.size, (255, 255, 255))
                    flat.paste(rgba, mask=rgba.getchannel("A"))
                    frame = flat
                elif frame.mode != "RGB":
                    frame = frame.convert("RGB")
                out = io.BytesIO()
                frame.save(out, "JPEG", quality=85, optimize=True)
                return out.getvalue()
    except ThumbnailError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ThumbnailError(f"The picture is too large to decode ({exc}).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow raises UnidentifiedImageError (an OSError) for unknown data, OSError/ValueError/
        # SyntaxError/EOFError for damaged files.
        raise ThumbnailError(f"The picture cannot be read ({exc}).") from None
