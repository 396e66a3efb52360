import sys
import textwrap

import pytest

from th1nker import registry


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """An installed-looking package whose entry point in `th1nker.blocks` registers a block."""
    (tmp_path / "th1nker_fake_plugin.py").write_text(textwrap.dedent('''
        from th1nker.blocks import Block
        from th1nker.registry import register

        @register("plugin_identity")
        class PluginIdentity(Block):
            """Returns the thought unchanged (a third-party block)."""

            def forward(self, thought):
                return thought
    '''))
    dist = tmp_path / "th1nker_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: th1nker-fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[th1nker.blocks]\nidentity = th1nker_fake_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield
    registry._CONFIGS.pop("plugin_identity", None)
    registry._CLASSES.pop("plugin_identity", None)
    sys.modules.pop("th1nker_fake_plugin", None)


def test_entry_point_blocks_are_registered_and_validate(fake_distribution, tiny_recipe):
    from th1nker.recipe import load_recipe

    assert "plugin_identity" in registry.kinds()
    recipe = load_recipe(tiny_recipe, ["model.blocks.noop.kind=plugin_identity", "graph.edges.read=[noop]",
                                       "graph.edges.noop=[think]", "schedule.step=[read,noop,think,answer]"])
    assert recipe.model.blocks["noop"].kind == "plugin_identity"


def test_a_broken_plugin_warns_instead_of_crashing(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[th1nker.blocks]\nbroken = no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    with pytest.warns(UserWarning, match="plugin 'broken'.*failed to load"):
        assert "process" in registry.kinds()
