"""`cello1 eval`: outputs (--json/--markdown/--plot), several inputs, errors."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from cello1.cli.eval_cmd import eval_

GOLD = "B cell | T cell | NK cell"


def wrap(answer: str) -> str:
    return f"<think>r</think>\n<answer>{answer}</answer>"


@pytest.fixture(scope="module")
def app():
    # The command on its own (as registered in cello1.cli as `cello1 eval`).
    application = typer.Typer()
    application.command()(eval_)
    return application


@pytest.fixture
def pred_files(tmp_path):
    def write(name, predictions, n_key=True):
        path = tmp_path / name
        recs = [
            {
                "id": f"p{i}",
                "sample": 0,
                "answer": GOLD,
                "prediction": p,
                "solver": "x",
                "tissue": "blood",
                **({"n": 3} if n_key else {}),
            }
            for i, p in enumerate(predictions)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        return path

    base = write("base.jsonl", [wrap(GOLD), wrap("T cell | B cell | NK cell"), "garbage", wrap(GOLD)])
    better = write("better.jsonl", [wrap(GOLD)] * 4, n_key=False)
    return base, better


def run(app, args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_single_input_json_keys(app, pred_files, tmp_path):
    out = tmp_path / "m.json"
    res = run(app, [pred_files[0], "--json", out, "--bootstrap", 100, "--seed", 3])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["n_puzzles"] == 4
    assert data["cell_accuracy"] == pytest.approx(7 / 12)
    assert data["batch_accuracy"] == pytest.approx(0.5)
    assert data["format_rate"] == pytest.approx(0.75)
    assert data["uniqueness"] == pytest.approx(0.75)
    assert all(
        isinstance(data[k], (int, float))
        for k in ("cell_accuracy", "batch_accuracy", "format_rate", "uniqueness", "n_puzzles")
    )
    assert set(data["ci"]) >= {"cell_accuracy", "batch_accuracy", "format_rate", "uniqueness", "mean_length"}
    assert data["bootstrap"] == {"resamples": 100, "seed": 3, "level": 0.95}
    assert "cell acc" in res.output and "base.jsonl" in res.output


def test_several_inputs_list_markdown_plot(app, pred_files, tmp_path):
    out, md, png = tmp_path / "m.json", tmp_path / "m.md", tmp_path / "acc.png"
    res = run(app, [*pred_files, "--json", out, "--markdown", md, "--plot", png, "--bootstrap", 50, "--lenient"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert isinstance(data, list) and [d["file"] for d in data] == ["base.jsonl", "better.jsonl"]
    assert data[1]["cell_accuracy"] == 1.0
    assert data[1]["paired_vs_first"]["n_pairs"] == 4
    assert data[1]["paired_vs_first"]["batch_accuracy"]["diff"] == pytest.approx(0.5)
    assert "lenient" in data[0]
    text = md.read_text()
    assert "| base.jsonl |" in text and "lenient cell" in text and "Paired bootstrap" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "prediction": "x"}\n', "no gold answer"),
        ('{"id": "a", "answer": "A | B"}\n', "no 'prediction'"),
        ("not json\n", "not valid JSON"),
    ],
)
def test_bad_input_one_line_error_exit_2(app, tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    out = tmp_path / "never.json"
    res = run(app, [bad, "--json", out])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists()  # no half-written output


def test_missing_file_and_bad_plot_name(app, pred_files, tmp_path):
    res = run(app, [tmp_path / "missing.jsonl"])
    assert res.exit_code == 2 and "no such file" in res.output
    res = run(app, [pred_files[0], "--plot", tmp_path / "plot.txt"])
    assert res.exit_code == 2 and ".png" in res.output


def test_registered_as_cello1_eval(pred_files, tmp_path):
    from cello1.cli import app as cello1_app

    out = tmp_path / "m.json"
    res = run(cello1_app, ["eval", pred_files[1], "--json", out, "--bootstrap", 0, "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["batch_accuracy"] == 1.0


@pytest.mark.slow  # imports transformers
def test_tokenizer_lengths_from_a_local_hf_tokenizer(app, pred_files, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # a tiny character-level tokenizer saved as a Hugging Face folder: length = characters
    # without whitespace, so the expected count is known exactly
    alphabet = sorted(set("".join(wrap(GOLD))) - set(" \n"))
    vocab = {"[UNK]": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", "isolated")]
    )
    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]").save_pretrained(folder)

    out = tmp_path / "m.json"
    res = run(app, [pred_files[1], "--tokenizer", folder, "--json", out, "--bootstrap", 0, "-q"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["length_unit"] == "tokens"
    assert data["mean_length"] == len(wrap(GOLD).replace(" ", "").replace("\n", ""))
