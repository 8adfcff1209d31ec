"""PromptSet sources: the world and user files, with row-level errors."""

import json

import pytest

import replab
from replab.datasets import PromptSet, TextCorpus, load
from replab.errors import DataError
from replab.world import kb, relations


def test_world_relation_prompts_cover_every_fact_and_template():
    ps = load("world:capital")
    rel = relations()["capital"]
    assert len(ps) == len(rel.facts) * len(rel.train_templates)
    i = ps.texts.index("The capital of France is")
    assert ps.answers[i] == " Paris" and ps.subjects[i] == "France" and ps.labels[i] == "Paris"
    held = load("world:capital", split="heldout")
    assert set(held.texts).isdisjoint(ps.texts)
    assert load("world:capital/heldout").texts == held.texts


def test_every_relation_has_five_train_and_two_heldout_templates_never_in_training():
    for rel in relations().values():
        assert len(rel.train_templates) >= 5 and len(rel.heldout_templates) >= 2, rel.name
        assert set(rel.train_templates).isdisjoint(rel.heldout_templates)


def test_heldout_sentences_never_occur_in_the_training_corpus():
    from replab.world.corpus import documents

    sentences = {s for d in documents(3000) for s in d.split("\n")}
    for rel in relations().values():
        for f in rel.facts[:20]:
            for t in rel.heldout_templates:
                assert f.render(t) not in sentences


def test_numeric_world_sets_carry_ground_truth_targets():
    lat = load("world:city_latitude")
    city = {c.name: c for c in kb.cities()}
    assert len(lat) == len(city) >= 200
    for text, subject, target in zip(lat.texts, lat.subjects, lat.targets):
        assert subject in text and target == city[subject].lat
    years = load("world:birth_year")
    person = {p.name: p for p in kb.people()}
    assert all(person[s].birth_year == t for s, t in zip(years.subjects, years.targets))


def test_sentiment_prompts_are_balanced_and_labelled():
    ps = load("world:sentiment")
    assert ps.labels.count("positive") == ps.labels.count("negative") == len(ps) // 2
    assert all(s in t for s, t in zip(ps.subjects, ps.texts))
    assert all(t.endswith("it was") or t.endswith("found it") for t in ps.texts)


def test_knowledge_base_meets_the_spec():
    g20 = {"Argentina", "Australia", "Brazil", "Canada", "China", "France", "Germany", "India", "Indonesia", "Italy",
           "Japan", "Mexico", "Russia", "Saudi Arabia", "South Africa", "South Korea", "Turkey", "United Kingdom",
           "United States"}
    names = {c.name for c in kb.countries()}
    assert len(names) >= 40 and g20 <= names
    assert len(kb.cities()) >= 200 and all(-90 <= c.lat <= 90 and -180 <= c.lon <= 180 for c in kb.cities())
    paris = next(c for c in kb.cities() if c.name == "Paris")
    assert abs(paris.lat - 48.86) < 0.5 and abs(paris.lon - 2.35) < 0.5
    people = kb.people()
    assert len(people) >= 300 and len({p.name for p in people}) == len(people)
    assert all(1500 <= p.birth_year <= 2000 for p in people)


def test_jsonl_and_csv_files(tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"text": "I liked it", "label": "pos", "subject": "liked"},
        {"text": "I hated it", "label": "neg", "subject": "hated"}]))
    ps = load(jl)
    assert isinstance(ps, PromptSet) and ps.labels == ("pos", "neg") and ps.targets is None
    csv = tmp_path / "p.csv"
    csv.write_text("text,target\nParis is,48.8\nTokyo is,35.7\n")
    assert load(csv).targets == (48.8, 35.7)


@pytest.mark.parametrize("name, data", [
    ("excel.csv", b"\xef\xbb\xbftext,label\r\nI liked it,pos\r\nI hated it,neg\r\n"),  # Excel's "CSV UTF-8"
    ("p.tsv", b"text\tlabel\nI liked it\tpos\nI hated it\tneg\n"),
    ("array.json", json.dumps([{"text": "I liked it", "label": "pos"}, {"text": "I hated it", "label": "neg"}]).encode()),
    ("lines.json", b'{"text": "I liked it", "label": "pos"}\n{"text": "I hated it", "label": "neg"}\n'),  # to_json
    ("sep.jsonl", '{"text": "I liked it\u2028", "label": "pos"}\n{"text": "I hated it", "label": "neg"}'.encode()),
])
def test_other_prompt_file_layouts(tmp_path, name, data):
    f = tmp_path / name
    f.write_bytes(data)
    ps = load(f)
    assert ps.texts[1] == "I hated it" and ps.texts[0].startswith("I liked it") and ps.labels == ("pos", "neg")


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ('{"label": 1}\n', "no 'text' column"),
    ('{"text": "a b", "subject": "c"}\n', "row 1: subject 'c' does not occur"),
    ('{"text": "a", "target": 1}\n{"text": "b", "target": "x"}\n', "row 2: target 'x' is not a number"),
    ('{"text": "a"}\nnot json\n', "line 2: not valid JSON"),
    ('{"text": "ok"}\n{"text": "caf\xe9"}\n'.encode("latin-1"), "line 2: byte 0xe9 is not UTF-8 text"),
])
def test_bad_files_name_the_file_row_and_problem(tmp_path, content, problem):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as err:
        load(f)
    assert problem in str(err.value) and "bad.jsonl" in str(err.value)


@pytest.mark.parametrize("name, content, problem", [
    ("nums.json", "[1, 2]", "expected an array of JSON objects"),
    ("broken.json", '[{"text": "a"},\n {"text": ]', "line 2: not valid JSON"),
    ("p.xlsx", "PK", "unsupported extension '.xlsx'"),
])
def test_bad_json_and_unknown_extensions(tmp_path, name, content, problem):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError, match=problem):
        load(f)


def test_txt_is_a_corpus(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("first document\n\nsecond document\n")
    corpus = load(f)
    assert isinstance(corpus, TextCorpus) and corpus.documents == ("first document", "second document")
    assert isinstance(replab.datasets.load("world:corpus"), TextCorpus)


def test_unknown_world_set_lists_known_ones():
    with pytest.raises(DataError, match="Known: sentiment"):
        load("world:nonsense")
