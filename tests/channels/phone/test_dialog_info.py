"""The dialog event package's document (channels/phone/dialog_info.py): what we write reads
back, what phones write is read (full and partial, namespaces, events), and what a hostile
phone could send (entities, DTDs, huge or deep documents) is refused."""

from __future__ import annotations

import pytest

from channels.phone import dialog_info as di

PHONE_DOC = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="7" state="partial"
             entity="sip:alice@example.com">
  <dialog id="d1" call-id="direct-1@phone" local-tag="a" remote-tag="b" direction="initiator">
    <state>confirmed</state>
    <remote><identity>sip:bob@example.com</identity></remote>
  </dialog>
  <dialog id="d2" call-id="old@phone"><state event="remote-bye">terminated</state></dialog>
</dialog-info>"""


def test_render_reads_back_with_every_field():
    dialogs = [di.Dialog("x1", "early", "c1@h", "lt", "rt", "recipient", "",
                         "sip:+33155501234@h"),
               di.Dialog("x2", "terminated", "c2@h", event="rejected")]
    body = di.render("sip:alice@127.0.0.1", 3, dialogs)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    info = di.parse(body)
    assert (info.entity, info.version, info.state) == ("sip:alice@127.0.0.1", 3, "full")
    assert info.dialogs == tuple(dialogs)


def test_render_escapes_what_it_is_given():
    body = di.render('sip:a"<&>@h', 0, [di.Dialog("i", "trying", 'c"<&>', remote="<&>")])
    info = di.parse(body)
    assert info.entity == 'sip:a"<&>@h' and info.dialogs[0].call_id == 'c"<&>'
    assert info.dialogs[0].remote == "<&>"


def test_a_phones_partial_document():
    info = di.parse(PHONE_DOC)
    assert (info.version, info.state) == (7, "partial")
    first, second = info.dialogs
    assert (first.state, first.call_id, first.direction, first.remote) == \
        ("confirmed", "direct-1@phone", "initiator", "sip:bob@example.com")
    assert (second.state, second.event, second.active) == ("terminated", "remote-bye", False)


def test_active_ignores_ours_and_terminated():
    info = di.parse(PHONE_DOC)
    assert di.active(info.dialogs, ours=lambda cid: False)
    assert not di.active(info.dialogs, ours=lambda cid: cid == "direct-1@phone")
    assert not di.active([], ours=lambda cid: False)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    b'<dialog-info version="1" state="full" entity="&lol2;"/>',
    b'<?xml version="1.0"?><!DOCTYPE d SYSTEM "file:///etc/passwd"><dialog-info/>',
    b'<dialog-info version="1"><!ENTITY x "y"></dialog-info>',
    b"<presence/>",
    b"<dialog-info version='x'/>",
    b"<dialog-info state='sometimes'/>",
    b"<dialog-info><dialog id='1'><state>dancing</state></dialog></dialog-info>",
    b"<dialog-info><dialog",
    b"<dialog-info>" + b"<dialog id='1'><state>early</state></dialog>" * (di.MAX_DIALOGS + 1)
    + b"</dialog-info>",
    b"<dialog-info>" + b" " * di.MAX_BODY_BYTES + b"</dialog-info>",
])
def test_unsafe_or_wrong_documents_are_refused(body):
    with pytest.raises(ValueError):
        di.parse(body)
