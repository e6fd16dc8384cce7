"""Local storage with its ``sizeInMB`` quota: a loop-mounted ext4 image per LocalStorage.

When the agent is root and ``mkfs.ext4``/``mount`` work (``HostSettings.hard_quota``), each
local resource directory is the mount point of its own small filesystem: a sparse image of
``sizeInMB`` plus the filesystem's overhead (so the role gets at least ``sizeInMB``), made with
``mkfs.ext4 -O ^has_journal -m 0`` and mounted ``nodev,nosuid``. Writing past it fails with
ENOSPC, as a full disk on Azure does. Wiping (``cleanOnRoleRecycle``) empties the filesystem;
rebuild and removal unmount it and delete the image. Mounts outlive a restart of the agent (the
new agent finds them in the mount table).

Otherwise the quota is *soft*: the guest agent measures usage every second and reports
``quota_exceeded`` and a ``localresource.over_quota`` event, without refusing writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path

from cumulo.host import spawner


def image_mb(size_mb: int) -> int:
    """Image size giving at least ``size_mb`` usable (ext4 without journal keeps ~8 %)."""
    return math.ceil(size_mb * 1.09) + 2


def is_mounted(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == target:
                    return True
    except OSError:
        pass
    return False


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def available() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("mkfs.ext4") is not None
        and shutil.which("mount") is not None
        and os.path.exists("/dev/loop-control")
    )


def ensure(mount_point: Path, image: Path, size_mb: int, uid: int, gid: int) -> None:
    """Mount ``image`` (made if missing) on ``mount_point``; raises OSError with the reason."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if is_mounted(mount_point):
        return
    image.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(image.parent, 0o700)
    if not image.exists():
        with open(image, "wb") as f:
            f.truncate(image_mb(size_mb) * 1024 * 1024)
        code, out = spawner.run_command(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-O",
                "^has_journal",
                "-m",
                "0",
                "-E",
                f"root_owner={uid}:{gid}",
                str(image),
            ]
        )
        if code != 0:
            image.unlink(missing_ok=True)
            raise OSError(f"mkfs.ext4 exited {code}: {out.strip()}")
    code, out = spawner.run_command(
        ["mount", "-o", "loop,nodev,nosuid", str(image), str(mount_point)]
    )
    if code != 0:
        raise OSError(f"mount of {image} exited {code}: {out.strip()}")
    with contextlib.suppress(OSError):
        (mount_point / "lost+found").rmdir()
    os.chown(mount_point, uid, gid)
    os.chmod(mount_point, 0o700)


def release(mount_point: Path, image: Path | None = None) -> None:
    """Unmount (lazily if busy) and delete the image."""
    if is_mounted(mount_point):
        code, _ = spawner.run_command(["umount", str(mount_point)])
        if code != 0:
            spawner.run_command(["umount", "-l", str(mount_point)])
    if image is not None:
        image.unlink(missing_ok=True)


def release_all_under(root: Path) -> None:
    """Unmount every local-storage filesystem under ``root`` (instance removal, cleanup)."""
    prefix = str(root.resolve()) + "/"
    mounts: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]).startswith(prefix):
                mounts.append(_unescape(fields[4]))
    for mount in sorted(mounts, reverse=True):
        release(Path(mount))
