"""deploy.versions: tool versions for manifests, never an error for a missing package."""
import platform

from deploy.versions import package_version, tool_versions


def test_known_and_missing_packages():
    import numpy

    assert package_version("numpy") == numpy.__version__
    assert package_version("no_such_package_for_sure") is None


def test_tool_versions_lists_python_first():
    versions = tool_versions(("numpy", "no_such_package_for_sure"))
    assert list(versions) == ["python", "numpy", "no_such_package_for_sure"]
    assert versions["python"] == platform.python_version()
    assert versions["no_such_package_for_sure"] is None
