"""Issue 25: an attachment is the file it names. A symbolic link (`notes.txt -> ~/.ssh/id_ed25519`) used to be
followed and shown under the link's name; now it is refused with its target named, and nothing is attached. The
benign twins: a real file attaches as before, and one reached through a linked folder is shown by its real path."""

from __future__ import annotations

import os
from pathlib import Path

from tui_helpers import SIZE, command, ready, send

from assistant.attachments import AttachmentError, read_attachment


def notifications(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(n.message) for n in app._notifications]


async def test_symlinks_are_refused_and_real_files_attach(make_app, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "outside" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n", encoding="utf-8")
    chosen = tmp_path / "p"  # the folder the user works in
    chosen.mkdir()
    (chosen / "notes.txt").symlink_to(secret)
    readme = chosen / "readme.md"
    readme.write_text("# Readme\n", encoding="utf-8")
    (tmp_path / "lf").symlink_to(chosen, target_is_directory=True)
    monkeypatch.chdir(tmp_path)  # short relative paths: Pilot types them key by key
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await command(pilot, "/attach p/notes.txt")
        assert app.attachments == []
        assert any(f"p/notes.txt: a symbolic link (to {secret})" in m for m in notifications(app)), notifications(app)
        # the benign twin: a real file reached through a linked folder attaches, shown by its real path
        await command(pilot, "/attach lf/readme.md")
        assert [(a.name, a.path) for a in app.attachments] == [("readme.md", readme.resolve())]
        await send(pilot, "sum")
        _, sent = app.session.received[-1]
        assert [a.text for a in sent] == ["# Readme\n"] and str(readme.resolve()) in str(sent[0].path)


def test_links_inside_the_folder_are_refused_too(tmp_path: Path) -> None:
    """One simple rule: every link is refused (its target named), wherever it points; the file itself attaches."""
    readme = tmp_path / "readme.md"
    readme.write_text("# Readme\n", encoding="utf-8")
    (tmp_path / "readme-link.md").symlink_to(readme)
    (tmp_path / "dangling.md").symlink_to(tmp_path / "gone.md")
    for name in ("readme-link.md", "dangling.md"):
        try:
            read_attachment(tmp_path / name, 1000)
        except AttachmentError as exc:
            assert f"{name}: a symbolic link (to {tmp_path}/" in str(exc)
        else:
            raise AssertionError(f"{name} was attached")
    assert read_attachment(readme, 1000).name == "readme.md"


def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The file is opened with O_NOFOLLOW: a link that appears between the check and the open is refused."""
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n", encoding="utf-8")
    victim = tmp_path / "notes.txt"
    victim.write_text("notes\n", encoding="utf-8")
    real_open = os.open

    def swap_then_open(path, flags, *args):  # type: ignore[no-untyped-def]
        if Path(path) == victim:
            victim.unlink()
            victim.symlink_to(secret)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    try:
        read_attachment(victim, 1000)
    except AttachmentError as exc:
        assert "symbolic link" in str(exc)
    else:
        raise AssertionError("a link swapped in after the check was followed")
