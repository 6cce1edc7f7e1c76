from tasksaga.api.url_text import _nul_in


def test_a_nul_is_found_in_the_path_raw_or_decoded_and_in_the_query_string() -> None:
    assert _nul_in({"path": "/tasks/a\x00b", "raw_path": b"/tasks/a%00b"}) == "path"
    assert _nul_in({"path": "/tasks/x", "raw_path": b"/tasks/x",
                    "query_string": b"status=Run%00ning"}) == "query string"
    assert _nul_in({"path": "/tasks", "query_string": b"a=\x00"}) == "query string"


def test_urls_without_a_nul_pass_even_with_other_control_characters() -> None:
    assert _nul_in({"path": "/tasks/a\x01", "raw_path": b"/tasks/a%01",
                    "query_string": b"k=%0A%100&status=Running"}) is None
