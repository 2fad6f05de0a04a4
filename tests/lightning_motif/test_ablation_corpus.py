"""The ablation corpus builder's text extraction (scripts/build_ablation_corpus.py), without downloading."""

import gzip
import importlib.util

from motif_cli import REPO

spec = importlib.util.spec_from_file_location("build_ablation_corpus", REPO / "scripts" / "build_ablation_corpus.py")
corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(corpus)


def test_html_keeps_the_page_text_without_scripts_navigation_or_side_bars():
    page = """<html><head><title>t</title><style>p {}</style></head><body>
    <div class="related"><a href="x">next</a></div>
    <div class="body"><h1>Groups</h1><p>A group is a set <em>G</em> with &lt;an&gt; operation.</p>
    <div class="note"><p>Nested <b>text</b> stays.</p></div></div>
    <div class="sphinxsidebar"><div><p>search</p></div></div><script>var x = 1;</script></body></html>"""
    assert corpus.html_text(page) == "Groups\n\nA group is a set G with <an> operation.\n\nNested text stays."


def test_long_texts_are_cut_at_blank_lines_and_short_ones_stay_whole():
    paragraph = "x" * 3000
    text = "\n\n".join([paragraph] * 10)
    pieces = corpus.documents(text)
    assert "\n\n".join(pieces) == text
    assert all(len(p) >= corpus.DOCUMENT_CHARS for p in pieces[:-1]) and len(pieces) == 4
    assert corpus.documents("short") == ["short"] and corpus.documents("  \n") == []


def test_files_are_read_through_gzip_and_html_is_stripped(tmp_path):
    (tmp_path / "a.rst.gz").write_bytes(gzip.compress("Title\n=====\n\ncaf\xe9".encode()))
    (tmp_path / "b.html").write_text("<p>one</p><p>two</p>")
    (tmp_path / "c.txt").write_bytes(b"bad \xff byte")
    assert corpus.read_text(tmp_path / "a.rst.gz") == "Title\n=====\n\ncaf\xe9"
    assert corpus.read_text(tmp_path / "b.html") == "one\n\ntwo"
    assert corpus.read_text(tmp_path / "c.txt") == "bad \ufffd byte"
