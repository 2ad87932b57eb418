"""The annotation report and plots: formats from the file name, one self-contained HTML file,
rendered by a real headless Chromium (installed by ``make setup``) and checked for what it shows.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from typer.testing import CliRunner

from cello1.annotation import annotate
from cello1.cli import app
from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced
from cello1.errors import InputError

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return pbmc68k_reduced()


@pytest.fixture(scope="module")
def result(pbmc):
    candidates = sorted(pbmc.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    with pytest.warns(UserWarning):
        return annotate(pbmc, "louvain", [*candidates, "CD4-positive"])  # a fuzzy name: a warning to show


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).exists(), "headless Chromium is installed by `make setup` (Debian package chromium)"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_plot_format_follows_the_file_name(result, tmp_path):
    assert result.plot(tmp_path / "umap.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in result.plot(tmp_path / "umap.svg").read_bytes()[:500]
    assert result.plot(tmp_path / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="unknown figure format 'xyz'"):
        result.plot(tmp_path / "umap.xyz")
    assert not (tmp_path / "umap.xyz").exists() and not list(tmp_path.glob("*.tmp"))


def test_report_renders_in_headless_chromium(result, tmp_path):
    path = result.report(tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    # self-contained: every image is a data URI, nothing is fetched
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    profile = tmp_path / "profile"
    dom = chromium(f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs["images"] == "3" and attrs["images-loaded"] == "3"  # UMAP, heatmap, dotplot all decoded
    assert attrs["clusters"] == "11"
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "was matched only approximately" in text  # the warning is shown
    assert "CD4+/CD25 T Reg" in text and "regulatory T cell (CL:0000815)" in text  # the mapping table
    assert "cello1.annotate(adata, 'louvain'" in text  # the exact call
    for row in result.table.itertuples():
        assert f'data-cluster="{row.cluster}"' in dom.stdout
    shot = tmp_path / "page.png"
    rendered = chromium(f"--user-data-dir={profile}", "--window-size=1280,2400", f"--screenshot={shot}", path.as_uri())
    assert rendered.returncode == 0 and shot.exists(), rendered.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[0] == 2400 and pixels.shape[1] == 1280
    assert pixels.std() > 0.05  # not a blank page
    coloured = np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2  # plot colours, not only black text
    assert coloured.mean() > 0.01


def test_cli_writes_report_and_pdf_plot_with_the_command(pbmc, tmp_path):
    source = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(source)
    types = sorted(pbmc.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    result = CliRunner().invoke(app, [
        "annotate", str(source), "-g", "louvain", "-c", ";".join(types), "-o", str(tmp_path / "out.h5ad"),
        "--report", str(tmp_path / "report.html"), "--plot", str(tmp_path / "umap.pdf"), "--per-cell",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "umap.pdf").read_bytes()[:5] == b"%PDF-"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "cello1 annotate" in page and "--per-cell" in page and "--report" in page
    annotated = ad.read_h5ad(tmp_path / "out.h5ad")
    assert "cello1_cell_type_cell" in annotated.obs and "cello1_cell_type_coarse" in annotated.obs
    assert str(annotated.uns["cello1_cell_type"]["settings"]["command"]).startswith("cello1 annotate")


def test_cli_rejects_bad_report_and_plot_names_before_work(pbmc, tmp_path):
    source = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(source)
    out = tmp_path / "out.h5ad"
    for extra, message in [
        (["--report", str(tmp_path / "r.pdf")], "end the file name in .html"),
        (["--plot", str(tmp_path / "u.xyz")], "unknown figure format"),
        (["--solver", "hf", "--model", "x", "--constrained"], "--constrained writes each cell type at most once"),
    ]:
        result = CliRunner().invoke(app, ["annotate", str(source), "-g", "louvain", "-c", "CD19+ B;CD34+", "-o",
                                          str(out), *extra])  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()


def test_cli_warnings_name_flags(pbmc, tmp_path):
    data = pbmc.copy()
    data.var["feature_name"] = data.var_names
    data.var_names = [f"ENSG{i:011d}" for i in range(data.n_vars)]
    del data.var["feature_name"]
    source = tmp_path / "ens.h5ad"
    data.write_h5ad(source)
    result = CliRunner().invoke(app, ["annotate", str(source), "-g", "louvain", "-c", "CD19+ B;CD34+", "-o",
                                      str(tmp_path / "o.h5ad")])  # fmt: skip
    assert result.exit_code == 2 and "pass --gene-key naming the var column" in result.output


def test_cli_prints_warnings_with_flags_and_stores_them(pbmc, tmp_path):
    data = pbmc.copy()
    data.var_names = [f"{g}_x" if i % 10 else g for i, g in enumerate(data.var_names)]  # few genes recognisable
    source = tmp_path / "odd.h5ad"
    data.write_h5ad(source)
    out = tmp_path / "o.h5ad"
    types = ";".join(sorted(pbmc.obs[EMBEDDED_LABEL_KEY].astype(str).unique()))
    result = CliRunner().invoke(app, ["annotate", str(source), "-g", "louvain", "-c", types, "-o", str(out)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("warning: only"))
    assert "pass --gene-key naming a var column" in line and "--markers" in line
    stored = list(ad.read_h5ad(out).uns["cello1_cell_type"]["warnings"])
    assert line.removeprefix("warning: ") in stored
