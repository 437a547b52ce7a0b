"""Tests for inputs/module.py, written by ref-test-writer.

Each expected value was recorded from the module itself (doctest examples first, then
inputs derived from type hints and defaults). Runs under pytest or
`python -m aismm.checks.run_tests`."""

from module import initials, slugify, truncate, word_count


def test_slugify_docstring():
    assert slugify("Hello, World!") == 'hello-world'
    assert slugify("  Crème brûlée  recipes ") == 'creme-brulee-recipes'


def test_slugify_cases():
    assert slugify('hello world') == 'hello_world'
    assert slugify('') == ''
    assert slugify('Hello, World!') == 'hello-world'
    assert slugify('a-b_c 42') == 'a-b-c-42'


def test_word_count_docstring():
    assert word_count("The cat and the hat") == {'the': 2, 'cat': 1, 'and': 1, 'hat': 1}


def test_word_count_cases():
    assert word_count('hello world') == {'hello': 1, 'world': 1}
    assert word_count('') == {}
    assert word_count('Hello, World!') == {'hello': 1, 'world': 1}
    assert word_count('a-b_c 42') == {'a': 1, 'b_c': 1, '42': 1}


def test_truncate_docstring():
    assert truncate("short") == 'short'
    assert truncate("The quick brown fox jumps over the lazy dog", 15) == 'The quick br...'
    assert truncate("abc", 2, "") == 'ab'
    try:
        truncate("abc", 1)
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'


def test_truncate_cases():
    assert truncate('hello world', 20, '...') == 'hello world'
    try:
        truncate('', 0, 'Hello, World!')
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    try:
        truncate('Hello, World!', 1, 'a-b_c 42')
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    assert truncate('', 20, '...') == ''
    assert truncate('Hello, World!', 20, '...') == 'Hello, World!'
    assert truncate('a-b_c 42', 20, '...') == 'a-b_c 42'
    assert truncate('hello world', 7, '...') == 'hell...'
    assert truncate('hello world', 3, '...') == '...'
    assert truncate('hello world', 4, '...') == 'h...'
    assert truncate('hello world', 9, '...') == 'hello ...'


def test_initials_cases():
    assert initials('hello world') == 'HW'
    assert initials('') == ''
    assert initials('Hello, World!') == 'HW'
    assert initials('a-b_c 42') == 'A4'
