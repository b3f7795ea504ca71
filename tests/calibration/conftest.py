"""Fixtures: a tiny real bundle (the zoo's MobileNetV2 at 32 px, 10 classes) and image folders."""
import pytest

from deploy.bundle import Bundle

from .helpers import export_tiny_bundle, write_images


@pytest.fixture(scope="session")
def tiny_bundle_template(tmp_path_factory):
    """A bundle whose weights are a saved checkpoint, so verify can re-create the PyTorch model."""
    folder = tmp_path_factory.mktemp("template")
    root = folder / "bundle"
    export_tiny_bundle(root, weights_path=folder / "weights.pt")
    return root


@pytest.fixture
def tiny_bundle(tiny_bundle_template, tmp_path):
    import shutil

    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_template, dest)
    return Bundle.open(str(dest))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, 12)
    return folder
