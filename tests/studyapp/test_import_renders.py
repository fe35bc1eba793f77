"""import_renders: a good manifest makes the round ready; every kind of bad one is refused whole."""


import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image, PngImagePlugin

from studyapp.models import Render, StudyRound
from studyapp.services.rounds import round_create
from studyapp.storage import render_files_listed

pytestmark = pytest.mark.django_db


@pytest.fixture
def rnd(round_config):
    cfg = {**round_config, "prompt_limit": 2, "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1}
    return round_create(config=cfg)


def write_png(path, size=(16, 16), value=0, *, meta=True):
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    if meta:
        info.add_text("objective", "SHIFT")  # metadata that must not survive the import
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, pnginfo=info)


def make_dir(tmp_path, rnd, *, rows=None, extra=""):
    d = tmp_path / "renders-in"
    d.mkdir(exist_ok=True)
    if rows is None:
        rows = []
        for i, r in enumerate(rnd.renders.select_related("prompt").order_by("pk")):
            f = f"img/{i}.png"
            write_png(d / f, value=10 * i)
            rows.append((r.prompt.text, str(r.seed), r.objective, f))
    text = "prompt\tseed\tobjective\tfile\n" + "".join("\t".join(row) + "\n" for row in rows) + extra
    (d / "manifest.tsv").write_text(text, encoding="utf-8")
    return d, rows


def import_error(rnd, d) -> str:
    with pytest.raises(CommandError) as exc:
        call_command("import_renders", str(rnd.pk), str(d))
    msg = str(exc.value)
    assert "nothing was imported" in msg or "no round" in msg or "draft" in msg
    assert not render_files_listed()
    assert not Render.objects.filter(round=rnd, status=Render.Status.DONE).exists()
    return msg


def test_good_manifest_imports_every_render_and_the_round_is_ready(rnd, tmp_path, capsys):
    d, rows = make_dir(tmp_path, rnd)
    # the prompt may be given by its external id too
    first = rnd.renders.select_related("prompt").order_by("pk").first()
    if first.prompt.external_id:
        rows[0] = (first.prompt.external_id, *rows[0][1:])
        d, _ = make_dir(tmp_path, rnd, rows=rows)
    call_command("import_renders", str(rnd.pk), str(d))
    assert "imported 4 images (16x16)" in capsys.readouterr().out
    rnd.refresh_from_db()
    assert rnd.status == StudyRound.Status.READY
    renders = list(rnd.renders.all())
    assert {r.status for r in renders} == {Render.Status.DONE}
    assert {r.image.name for r in renders} == render_files_listed()
    for r in renders:
        assert r.provenance["source"] == "import" and r.provenance["file"].startswith("img/")
        data = default_storage.open(r.image.name).read()
        assert b"tEXt" not in data and b"SHIFT" not in data  # re-encoded without metadata
        assert r.objective not in r.image.name and "img" not in r.image.name


def test_missing_and_duplicate_rows(rnd, tmp_path):
    d, rows = make_dir(tmp_path, rnd)
    d, _ = make_dir(tmp_path, rnd, rows=rows[:2] + [rows[0]])
    msg = import_error(rnd, d)
    assert "line 4: duplicate row: same prompt, seed and objective as line 2" in msg
    assert msg.count("missing row for prompt") == 2


def test_unknown_prompt_objective_seed_and_bad_columns(rnd, tmp_path):
    d, rows = make_dir(tmp_path, rnd)
    bad = [("no such prompt", "0", "SHIFT", rows[0][3]), (rows[1][0], "7", rows[1][2], rows[1][3]),
           (rows[2][0], "0", "CLIP", rows[2][3]), (rows[3][0], "x", rows[3][2], rows[3][3])]
    d, _ = make_dir(tmp_path, rnd, rows=bad, extra="only\ttwo\n")
    msg = import_error(rnd, d)
    assert "line 2: unknown prompt 'no such prompt'" in msg
    assert "line 3: seed 7 is not a seed of this round" in msg
    assert "line 4: unknown objective 'CLIP' (this round has ITC, SHIFT)" in msg
    assert "line 5: seed 'x' is not an integer" in msg
    assert "line 6: 2 column(s), the header has 4" in msg


def test_images_of_a_round_must_share_one_size(rnd, tmp_path):
    d, rows = make_dir(tmp_path, rnd)
    write_png(d / rows[2][3], size=(32, 16))
    msg = import_error(rnd, d)
    assert "line 4: file 'img/2.png' is 32x16, but line 2's is 16x16 (all images of a round must share one size)" in msg
    assert "(1 problem(s))" in msg


def test_unreadable_missing_and_outside_files(rnd, tmp_path):
    d, rows = make_dir(tmp_path, rnd)
    (d / rows[0][3]).write_bytes(b"not an image")
    outside = tmp_path / "outside.png"
    write_png(outside)
    rows[2] = (*rows[2][:3], "../outside.png")
    rows[3] = (*rows[3][:3], "img/nope.png")
    d, _ = make_dir(tmp_path, rnd, rows=rows)
    msg = import_error(rnd, d)
    assert "line 2: file 'img/0.png': not a readable image" in msg
    assert "line 3" not in msg and msg.count("missing row") == 0
    assert "line 4: file '../outside.png' is outside" in msg
    assert "line 5: file 'img/nope.png' not found" in msg


def test_absolute_path_and_symlink_out_of_the_folder(rnd, tmp_path):
    d, rows = make_dir(tmp_path, rnd)
    outside = tmp_path / "secret.png"
    write_png(outside)
    (d / "link.png").symlink_to(outside)
    rows[0] = (*rows[0][:3], str(outside))
    rows[1] = (*rows[1][:3], "link.png")
    d, _ = make_dir(tmp_path, rnd, rows=rows)
    msg = import_error(rnd, d)
    assert "line 2: file" in msg and "is an absolute path" in msg
    assert "line 3: file 'link.png' is outside" in msg


def test_no_manifest_bad_header_unknown_round_and_wrong_status(rnd, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "cannot read manifest.tsv" in import_error(rnd, empty)
    d, _ = make_dir(tmp_path, rnd)
    (d / "manifest.tsv").write_text("prompt\tobjective\n", encoding="utf-8")
    assert "missing column(s) seed, file" in import_error(rnd, d)
    with pytest.raises(CommandError, match="no round with id 999999"):
        call_command("import_renders", "999999", str(d))
    StudyRound.objects.filter(pk=rnd.pk).update(status=StudyRound.Status.RENDERING)
    d, _ = make_dir(tmp_path, rnd)
    assert "draft round only (cancel the render run first)" in import_error(rnd, d)


def test_database_failure_deletes_the_copied_files(rnd, tmp_path, monkeypatch):
    from studyapp.services import render_import

    d, _ = make_dir(tmp_path, rnd)

    def boom(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(render_import, "_record", boom)
    with pytest.raises(RuntimeError):
        render_import.renders_import(round_id=rnd.pk, directory=d)
    assert not render_files_listed()
    assert not rnd.renders.filter(status=Render.Status.DONE).exists()


def test_prompts_by_external_id(round_config, tmp_path):
    from studyapp.services.prompts import prompt_set_import

    prompt_set_import(name="with-ids", data=b"prompt\tid\na red cube\tP1\na blue ball\tP2\n")
    rnd = round_create(config={**round_config, "prompt_set": "with-ids", "prompt_limit": 2,
                               "objectives": ["SHIFT", "CAP"], "seeds_per_prompt": 1})
    rows = []
    d = tmp_path / "renders-in"
    for i, r in enumerate(rnd.renders.select_related("prompt").order_by("pk")):
        write_png(d / f"{i}.png")
        rows.append((r.prompt.external_id if i % 2 else r.prompt.text, "0", r.objective.lower(), f"{i}.png"))
    assert any(row[0] == "P2" for row in rows)
    d, _ = make_dir(tmp_path, rnd, rows=rows)
    call_command("import_renders", str(rnd.pk), str(d))
    assert set(rnd.renders.values_list("status", flat=True)) == {"done"}


# --- size caps, and files read in chunks (issue 13, item 7) -------------------------------------------


def test_image_file_size_threshold(rnd, tmp_path, monkeypatch):
    from studyapp.services import render_import

    d, rows = make_dir(tmp_path, rnd)
    biggest = max((d / r[3]).stat().st_size for r in rows)
    monkeypatch.setattr(render_import, "MAX_IMAGE_BYTES", biggest - 1)  # one byte under the biggest file
    msg = import_error(rnd, d)
    assert f"larger than the {biggest - 1:,} bytes an image file may be" in msg
    monkeypatch.setattr(render_import, "MAX_IMAGE_BYTES", biggest)  # at the cap: accepted
    call_command("import_renders", str(rnd.pk), str(d))
    assert StudyRound.objects.get(pk=rnd.pk).status == "ready"


def test_a_large_image_file_is_streamed_not_read_whole(rnd, tmp_path):
    """A 40 MB file (a valid PNG followed by junk, under the cap) is hashed in chunks: the import's
    peak Python memory stays far below the file's size."""
    import tracemalloc

    from studyapp.services.render_import import manifest_validate

    d, rows = make_dir(tmp_path, rnd)
    big = d / rows[0][3]
    with open(big, "ab") as f:
        f.write(b"\0" * (40 * 1024 * 1024))
    tracemalloc.start()
    try:
        manifest_validate(rnd, d)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak:,} bytes while reading a {big.stat().st_size:,}-byte file"


def test_manifest_size_cap_and_junk(rnd, tmp_path, monkeypatch):
    from studyapp.services import render_import

    d, _ = make_dir(tmp_path, rnd, extra="a\x00b\t0\tSHIFT\tx.png\n")
    assert "unknown prompt" in import_error(rnd, d)  # a NUL is a listed problem, not a crash
    d, _ = make_dir(tmp_path, rnd, extra='"' + ("z" * 3000 + "\n") * 50)
    assert "cannot be read" in import_error(rnd, d)
    d, _ = make_dir(tmp_path, rnd)
    monkeypatch.setattr(render_import, "MAX_MANIFEST_BYTES", (d / "manifest.tsv").stat().st_size - 1)
    assert "manifest.tsv is larger than" in import_error(rnd, d)
