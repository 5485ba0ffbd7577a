"""The report's sections from results.json rows."""


def test_scaling_section_names_every_alpha_rule():
    from snnexit.report.markdown import scaling_section

    policies = {"a": {"alpha": {"rule": "T", "value": 32}, "temperature": 1.5},
                "b": {"alpha": {"rule": "t", "value": None}, "temperature": 2.0},
                "c": {"alpha": {"rule": "constant", "value": 3}, "temperature": 1.0},
                "certified": {"alpha": {"rule": "t", "value": None}, "temperature": 2.0, "policy": "mean_output_confidence"},
                "fixed": {"alpha": None}}
    text = "\n".join(scaling_section(policies))
    assert "| a | T = 32 (run length) | 1.5 |" in text and "| b | t (mean output) | 2 |" in text
    assert "| c | 3 | 1 |" in text and "| certified (mean_output_confidence) | t (mean output) | 2 |" in text
    assert "fixed" not in text
