"""Starting a campaign from the browser: the uploaded files, confined, capped, checked like the CLI.

Files go to a fresh directory under ``<cache_dir>/uploads/`` with sanitised names (no path,
no leading dot, a known extension per role), each under a size cap. The campaign file is
then loaded and checked by the same code as ``campaign run`` / ``campaign import``
(``load_campaign``, the modem and script checks, the contacts reader), and its messages are
shown as the CLI prints them, with the upload directory taken off the paths so they name the
files the operator chose. A campaign whose files point outside the upload is refused.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader

from ...campaign.contacts import BadRow, read_rows
from ...campaign.spec import CampaignFile, load_campaign
from ...errors import UserError

MAX_FILES = 40
CAPS = {"campaign": 1 << 20, "flow": 1 << 20, "contacts": 256 << 20, "prompts": 64 << 20}
EXTENSIONS = {"campaign": (".yaml", ".yml"), "flow": (".yaml", ".yml"), "contacts": (".csv", ".txt"),
              "prompts": (".wav",)}
SHOWN_BAD_ROWS = 200          # bad contact rows listed on the page (all are counted)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(raw: str | None, role: str) -> str:
    """A file name we can write: the last path part, odd characters as '_', a known extension."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _SAFE.sub("_", name).lstrip("._")[:120]
    if not name:
        raise UserError(f"{role}: the file has no usable name")
    if not name.lower().endswith(EXTENSIONS[role]):
        raise UserError(f"{role}: {name}: expected a {' or '.join(EXTENSIONS[role])} file")
    return name


@dataclass
class Upload:
    dir: Path
    campaign: Path | None = None
    accept_bad: bool = False
    files: list[str] = field(default_factory=list)

    def show(self, text: str) -> str:
        """A message as the CLI would print it in the directory of the files (no upload path)."""
        return text.replace(str(self.dir) + "/", "").replace(str(self.dir), ".")


async def receive(reader: MultipartReader, root: Path) -> Upload:
    """Write the parts of a campaign upload under a new directory of ``root``."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    d.mkdir(mode=0o700)
    up = Upload(d)
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise UserError("nested multipart bodies are not accepted")
        role = part.name or ""
        if role == "accept_bad":
            up.accept_bad = (await part.text()).strip() in ("1", "on", "true", "yes")
            continue
        if role not in CAPS:
            raise UserError(f"unexpected form field {role!r}")
        if not part.filename:      # an empty file input
            await part.release()
            continue
        if len(up.files) >= MAX_FILES:
            raise UserError(f"more than {MAX_FILES} files")
        name = safe_name(part.filename, role)
        if name in up.files:
            raise UserError(f"{name}: uploaded twice")
        path = d / name
        size = 0
        with path.open("xb") as f:
            while chunk := await part.read_chunk(1 << 16):
                size += len(chunk)
                if size > CAPS[role]:
                    raise UserError(f"{name}: larger than {CAPS[role] >> 20} MB")
                f.write(chunk)
        up.files.append(name)
        if role == "campaign":
            if up.campaign is not None:
                raise UserError("give one campaign file")
            up.campaign = path
    if up.campaign is None:
        raise UserError("campaign: choose the campaign file (.yaml)")
    return up


def _inside(p: Path, d: Path) -> bool:
    try:
        p.resolve().relative_to(d.resolve())
        return True
    except ValueError:
        return False


@dataclass
class Checked:
    cf: CampaignFile | None
    errors: list[str]
    bad_rows: int = 0


def check(up: Upload, region: str) -> Checked:
    """Load and check the uploaded campaign as ``campaign import`` does (run in a worker thread)."""
    assert up.campaign is not None
    try:
        cf = load_campaign(up.campaign)
    except UserError as exc:
        return Checked(None, [up.show(str(exc))])
    name = up.campaign.name
    for key in ("contacts", "message", "flow"):
        value = getattr(cf.spec, key)
        if value is not None and not _inside(cf.resolve(value), up.dir):
            return Checked(cf, [f"{name}: {key}: {value!r} is not one of the uploaded files"])
        if value is not None and not cf.resolve(value).exists():
            return Checked(cf, [f"{name}: {key}: {value!r} was not uploaded"])
    errors: list[str] = []
    count = 0

    def bad(row: BadRow) -> None:
        nonlocal count
        count += 1
        if count <= SHOWN_BAD_ROWS:
            errors.append(up.show(f"{cf.contacts_path}:{row.line}: {row.reason}"))
    try:
        for _ in read_rows(cf.contacts_path, cf.spec.region or region, bad):
            pass
    except UserError as exc:
        return Checked(cf, [up.show(str(exc))])
    if count > SHOWN_BAD_ROWS:
        errors.append(f"… and {count - SHOWN_BAD_ROWS} more bad row(s)")
    return Checked(cf, errors, count)
