"""The trained model at work: `stcore predict` on new image files, and `stcore export --model
F.onnx` read back with onnxruntime."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stcore import api, cli, embed
from stcore.data import images
from stcore.errors import NotFound, ProjectError, UsageError
from stcore.pseudo import image_model

pytestmark = pytest.mark.needs_fmnist
N = 40  # test images written as files


def write_test_pngs(project, folder, n: int = N):
    """The project's first n test images as PNGs (0000.png, ...), in a folder and a subfolder."""
    for i, a in enumerate(images(project, "test")[:n].numpy()):
        path = folder / ("sub" if i % 2 else "") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(path)
    return folder


def by_name(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda it: it["path"].rsplit("/", 1)[1])


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_predict_gives_the_runs_own_test_predictions_and_skips_what_is_not_an_image(trained_project, tmp_path, capsys):
    p, folder = trained_project, write_test_pngs(trained_project, tmp_path / "new")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "broken.png").write_text("not an image either")
    run_id = api.teacher(p)["id"]  # the only finished run: the default
    rc, out, err = run_cli(capsys, "predict", p.path, folder, "--json")
    assert rc == 0, err
    result = json.loads(out)
    want = [p.classes[c] for c in api.test_predictions(p, run_id)[:N]]
    assert result["run"] == run_id and [it["class"] for it in by_name(result["items"])] == want
    probs = np.sort(np.load(p.run_dir(run_id) / "test_probs.npy")[:N].astype(np.float32), 1)  # stored float16
    assert np.allclose([it["confidence"] for it in by_name(result["items"])], probs[:, -1], atol=1e-3)
    assert np.allclose([it["margin"] for it in by_name(result["items"])], probs[:, -1] - probs[:, -2], atol=1e-3)
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in result["skipped"]}
    assert "not an image file type" in reasons["notes.txt"] and "not an image Pillow" in reasons["broken.png"]
    assert "skipped" in err and "broken.png" in err

    rc, out, err = run_cli(capsys, "predict", p.path, folder, "--csv", tmp_path / "out.csv", "--run", run_id)
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert rc == 0 and [r["class"] for r in by_name(rows)] == want and f"{N} predictions" in out
    rc, out, _ = run_cli(capsys, "predict", p.path, folder / "0000.png", folder / "sub" / "broken.png")
    assert rc == 0 and out.startswith(want[0] + "  ") and len(out.splitlines()) == 1  # files named one by one


def test_a_head_on_an_embedding_predicts_new_images_and_exports_with_its_backbone(trained_project, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    p = trained_project
    api.export_model(p, tmp_path / "teacher.pt", api.teacher(p)["id"])
    api.start_embedding(p, f"file:{tmp_path / 'teacher.pt'}", detach=False)  # a small CNN's features: cheap
    head = api.start_training(p, {"role": "teacher", "model": "head", "steps": 50}, detach=False)
    result = api.predict_files(p, [write_test_pngs(p, tmp_path / "new")], run_id=head)
    want = [p.classes[c] for c in api.test_predictions(p, head)[:N]]
    assert [it["class"] for it in by_name(result["items"])] == want
    assert_onnx_gives_pytorch_probabilities(ort, p, head, tmp_path / "head.onnx", capsys)


def test_the_onnx_export_of_a_cnn_gives_pytorch_probabilities(trained_project, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    assert_onnx_gives_pytorch_probabilities(ort, trained_project, api.teacher(trained_project)["id"],
                                            tmp_path / "cnn.onnx", capsys)


def assert_onnx_gives_pytorch_probabilities(ort, p, run_id: str, dest, capsys) -> None:
    rc, out, err = run_cli(capsys, "export", p.path, "--model", dest, "--run", run_id)
    assert rc == 0 and json.loads(out)["model"]["run"] == run_id, err
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    x = images(p, "test")[:64].float() / 255
    got = session.run(["probs"], {"images": x.numpy()})[0]
    with torch.inference_mode():
        want = image_model(p, run_id)(x).softmax(1).numpy()
    assert got.shape == (64, len(p.classes)) and np.allclose(got, want, atol=1e-4), np.abs(got - want).max()
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == p.classes and meta["run"] == run_id
    assert json.loads(meta["input_shape"]) == [1, 28, 28] and json.loads(meta["preprocessing"])["resize"] == [28, 28]


def test_bad_input_is_a_one_line_error(trained_project, tmp_path, capsys):
    p = trained_project
    (tmp_path / "empty").mkdir()
    cases = [((tmp_path / "nowhere",), "no such file or folder"),
             ((tmp_path / "empty",), "no image files"),
             ((write_test_pngs(p, tmp_path / "new", 2), "--run", "student-99"), "no run 'student-99'")]
    for argv, says in cases:
        rc, _, err = run_cli(capsys, "predict", p.path, *argv)
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_head_on_the_pixels_embedding_reads_new_images_as_it_read_the_projects(trained_project, tmp_path):
    p = trained_project
    api.start_embedding(p, "pixels", detach=False)
    head = api.start_training(p, {"role": "teacher", "model": "head", "steps": 50}, detach=False)
    files = write_test_pngs(p, tmp_path / "new")
    got = by_name(api.predict_files(p, [files], run_id=head)["items"])
    probs = np.load(p.run_dir(head) / "test_probs.npy")[:N].astype(np.float32)  # from the embedding's rows
    same = sum(it["class"] == p.classes[int(k)] for it, k in zip(got, probs.argmax(1)))
    assert same >= N - 1, same  # the rows are rounded to float16 both ways: at most a near-tie apart
    assert np.allclose([it["confidence"] for it in got], probs.max(1), atol=2e-2)
    kept = embed.projection_path(embed.paths(p, "pixels")[0])
    kept.unlink()  # an embedding made before its projection was kept
    with pytest.raises(ProjectError, match="embed the project again"):
        api.predict_files(p, [files], run_id=head)

def test_a_predict_job_classifies_as_stcore_predict_does_and_refuses_bad_input_before_it_starts(trained_project,
                                                                                              tmp_path):
    """The dashboard's way: a detached job (here run in this process), its model pinned when
    queued, its predictions a CSV in its run folder, read back by api.predictions."""
    p, folder = trained_project, write_test_pngs(trained_project, tmp_path / "new")
    (folder / "sub" / "broken.png").write_text("not an image")
    here = api.predict_files(p, [folder])
    job = api.start_predict(p, [folder], detach=False)
    run = api.run(p, job)
    assert run["state"] == "finished" and run["config"]["run"] == api.teacher(p)["id"]
    assert (run["step"], run["total"]) == (N + 1, N + 1)  # every image file, the broken one too
    got = api.predictions(p, job)
    assert [(it["path"], it["class"]) for it in got] == [(it["path"], it["class"]) for it in here["items"]]
    assert np.allclose([it["confidence"] for it in got], [it["confidence"] for it in here["items"]], atol=1e-6)
    r = run["result"]
    assert r["items"] == N and r["skipped"] == 1 and sum(r["classes"].values()) == N
    assert r["skipped_files"][0]["path"].endswith("broken.png")
    assert f"classified {N:,} images with {r['model']}" in api.summary(run)
    runs = len(api.runs(p))
    with pytest.raises(UsageError, match="no such file or folder"):
        api.start_predict(p, [tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no image files"):
        api.start_predict(p, [tmp_path / "empty"])
    with pytest.raises(NotFound, match="student-99"):
        api.start_predict(p, [folder], run_id="student-99")
    assert len(api.runs(p)) == runs  # nothing was queued


def test_the_export_page_classifies_a_folder_in_a_job_and_shows_it(trained_project, tmp_path, monkeypatch):
    """Export → Classify new images: a folder typed in; the job runs detached; the page then
    shows its summary, the chart and the table, least confident first."""
    import time
    from test_transfer import export_page
    p = trained_project
    folder = write_test_pngs(p, tmp_path / "new", 6)
    at = export_page(p, tmp_path, monkeypatch)
    assert not at.exception and at.button(key="pr_go").disabled
    at.text_input(key="pr_path").set_value(str(folder)).run()
    at.button(key="pr_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = [r for r in api.runs(p) if r["role"] == "predict"][-1]
    deadline = time.time() + 120
    while time.time() < deadline and api.run(p, job["id"])["state"] in ("queued", "running"):
        time.sleep(0.5)
    assert api.run(p, job["id"])["state"] == "finished", api.run(p, job["id"])
    at.run()
    assert not at.exception and f"classified 6 images with {api.teacher(p)['id']}" in at.success[0].value.replace("\\", "")
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert len(table) == 6 and list(table["confidence"]) == sorted(table["confidence"])
    table["path"] = [str(folder / q) for q in table["path"]]  # shown under the folder they share
    want = {it["path"]: it["class"] for it in api.predict_files(p, [folder])["items"]}
    assert dict(zip(table["path"], table["class"])) == want
    at.text_input(key="pr_path").set_value(str(folder / "sub")).run()  # a second job: the page follows it, not the first
    at.button(key="pr_go").click().run()
    second = [r for r in api.runs(p) if r["role"] == "predict"][-1]["id"]
    assert second != job["id"]
    while time.time() < deadline + 60 and api.run(p, second)["state"] in ("queued", "running"):
        time.sleep(0.5)
    at.run()
    assert at.success[0].value.replace("\\", "").startswith(f"{second}: classified 3 images")
    (tmp_path / "empty").mkdir()
    at.text_input(key="pr_path").set_value(str(tmp_path / "empty")).run()
    at.button(key="pr_go").click().run()
    assert "no image files" in at.error[0].value


def test_uploaded_images_are_kept_under_safe_unique_names_for_the_job(trained_project, tmp_path):
    p = trained_project
    blob = (write_test_pngs(p, tmp_path / "new", 1) / "0000.png").read_bytes()
    uploads = [("../../evil name.PNG", blob), ("evil name.png", blob), ("", blob), ("a-2.png", b"first"),
               ("a.png", blob), ("a.png", b"third")]
    job = api.start_predict(p, uploads=uploads, detach=False)
    folder = Path(api.run(p, job)["config"]["paths"])
    assert folder.parent == p.path / "uploads" and sorted(f.name for f in folder.iterdir()) == [
        "a-2.png", "a-3.png", "a.png", "evil name-2.png", "evil name.PNG", "image-2.png"]
    assert (folder / "a-2.png").read_bytes() == b"first" and (folder / "a-3.png").read_bytes() == b"third"
    result = api.run(p, job)["result"]
    assert result["items"] == 4 and result["skipped"] == 2  # the two that are not images
    with pytest.raises(UsageError, match="either"):
        api.start_predict(p, [folder], uploads=uploads)
    with pytest.raises(NotFound):  # refused: the uploads it kept are removed again
        api.start_predict(p, uploads=uploads, run_id="student-99")
    assert [f for f in (p.path / "uploads").iterdir()] == [folder]
    (p.run_dir(job) / "predictions.csv").unlink()
    with pytest.raises(NotFound, match="are gone"):
        api.predictions(p, job)


def test_a_predict_job_fails_on_no_image_refuses_a_stale_model_and_keeps_absolute_paths(trained_project, tmp_path,
                                                                                        monkeypatch):
    p = trained_project
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "broken.png").write_text("not an image")
    job = api.start_predict(p, [tmp_path / "junk" / "broken.png"], detach=False)
    assert api.run(p, job)["state"] == "failed" and "no file could be read as an image" in api.run(p, job)["error"]
    monkeypatch.chdir(tmp_path)  # the worker runs in the project's folder: a relative path is made absolute first
    write_test_pngs(p, tmp_path / "rel", 2)
    job = api.start_predict(p, ["rel"], detach=False)
    assert api.run(p, job)["config"]["paths"] == str(tmp_path / "rel") and api.run(p, job)["result"]["items"] == 2
    api.add_classes(p, ["Extra"])
    with pytest.raises(UsageError, match="learned other classes"):
        api.start_predict(p, ["rel"])
