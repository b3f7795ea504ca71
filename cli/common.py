"""What the command modules share: exit codes and finding the bundle under build/."""
import os

from deploy.errors import UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2



def bundles_under_build():
    """The bundle folders directly under build/ (those with a manifest)."""
    names = os.listdir("build") if os.path.isdir("build") else []
    return sorted(os.path.join("build", d) for d in names if os.path.isfile(os.path.join("build", d, "manifest.json")))


def only_bundle(command, found, no_bundle_hint="build one first"):
    """The one bundle in ``found``, else a UsageError naming the choices."""
    if len(found) == 1:
        return found[0]
    raise UsageError("{} bundles under build/: name one".format("no" if not found else len(found)),
                     hint="python pipeline.py {} BUNDLE{}".format(
                         command, " (one of: {})".format(", ".join(found)) if found else "; " + no_bundle_hint))


DEVICE_BUNDLE = os.path.join("build", "jetson-nano")


def add_device_bundle_argument(parser):
    """The optional BUNDLE of the device-side commands (engines, device-run), build/jetson-nano by default."""
    parser.add_argument("bundle", nargs="?", default=DEVICE_BUNDLE,
                        help="bundle folder (default: {})".format(DEVICE_BUNDLE))
