"""The dialog event package's document (RFC 4235 `application/dialog-info+xml`), both ways.

Sits in the phone edge under presence.py (the notifier writes it) and watch.py (the subscriber
reads what agents' phones publish); pure functions, no I/O. Promises:
- `render` writes a full-state document with the standard library (xml.etree), escaped;
- `parse` reads a phone's document safely without defusedxml (not a dependency of the repo):
  bodies above `MAX_BODY_BYTES`, with a DOCTYPE or an ENTITY declaration (so no entity
  expansion, no external entities) or with more than `MAX_DIALOGS` dialogs are refused with
  `ValueError`, as is anything that is not a `dialog-info` document;
- `active` says whether a document shows a call in progress on the phone (a dialog in any
  state but `terminated`) that is not one of ours.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CONTENT_TYPE = "application/dialog-info+xml"
EVENT = "dialog"
NS = "urn:ietf:params:xml:ns:dialog-info"
MAX_BODY_BYTES = 16 * 1024  # a desk phone's few dialogs fit in 2 KiB
MAX_DIALOGS = 32
STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
TERMINATED = "terminated"
FULL, PARTIAL = "full", "partial"


@dataclass(frozen=True, slots=True)
class Dialog:
    """One dialog of a document: `id` is unique within the document's entity."""

    id: str
    state: str
    call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    direction: str = ""  # initiator | recipient | ""
    event: str = ""  # why it terminated: cancelled, rejected, local-bye, remote-bye, ...
    remote: str = ""  # the other party's URI

    @property
    def active(self) -> bool:
        return self.state != TERMINATED


@dataclass(frozen=True, slots=True)
class DialogInfo:
    entity: str
    version: int
    state: str  # full | partial
    dialogs: tuple[Dialog, ...]


def render(entity: str, version: int, dialogs: Iterable[Dialog]) -> bytes:
    """A full-state document (RFC 4235 §4.1) of `dialogs`, as UTF-8 bytes."""
    root = ET.Element("dialog-info", {"xmlns": NS, "version": str(version),
                                      "state": FULL, "entity": entity})
    for d in dialogs:
        attrs = {"id": d.id}
        for name, value in (("call-id", d.call_id), ("local-tag", d.local_tag),
                            ("remote-tag", d.remote_tag), ("direction", d.direction)):
            if value:
                attrs[name] = value
        el = ET.SubElement(root, "dialog", attrs)
        state = ET.SubElement(el, "state", {"event": d.event} if d.event else {})
        state.text = d.state
        if d.remote:
            remote = ET.SubElement(el, "remote")
            ET.SubElement(remote, "identity").text = d.remote
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                    xml_declaration=False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes) -> DialogInfo:
    """A phone's dialog-info document; ValueError when unsafe or not one."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"dialog-info body over {MAX_BODY_BYTES} bytes")
    lowered = body.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise ValueError("dialog-info with a DOCTYPE or ENTITY declaration refused")
    try:
        root = ET.fromstring(body)  # size-bounded, no DTD (checked above)
    except ET.ParseError as e:
        raise ValueError(f"unreadable dialog-info: {e}") from None
    if _local(root.tag) != "dialog-info":
        raise ValueError(f"not a dialog-info document: {_local(root.tag)}")
    try:
        version = int(root.get("version", "0"))
    except ValueError:
        raise ValueError("dialog-info version is not a number") from None
    state = root.get("state", FULL)
    if state not in (FULL, PARTIAL):
        raise ValueError(f"dialog-info state {state!r}")
    dialogs = []
    for el in root:
        if _local(el.tag) != "dialog":
            continue
        if len(dialogs) >= MAX_DIALOGS:
            raise ValueError(f"more than {MAX_DIALOGS} dialogs")
        dialogs.append(_dialog(el))
    return DialogInfo(root.get("entity", ""), version, state, tuple(dialogs))


def _dialog(el: ET.Element) -> Dialog:
    st = next((c for c in el if _local(c.tag) == "state"), None)
    text = (st.text or "").strip().lower() if st is not None else ""
    if text not in STATES:
        raise ValueError(f"dialog state {text!r}")
    remote = ""
    for c in el:
        if _local(c.tag) == "remote":
            ident = next((i for i in c if _local(i.tag) == "identity"), None)
            remote = (ident.text or "").strip() if ident is not None else ""
    return Dialog(id=el.get("id", ""), state=text, call_id=el.get("call-id", ""),
                  local_tag=el.get("local-tag", ""), remote_tag=el.get("remote-tag", ""),
                  direction=el.get("direction", ""),
                  event=(st.get("event", "") if st is not None else ""), remote=remote)


def active(dialogs: Iterable[Dialog], ours: Callable[[str], bool]) -> bool:
    """Whether a call not of ours is in progress on the phone (any state but terminated)."""
    return any(d.active and not ours(d.call_id) for d in dialogs)
