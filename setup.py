"""Maps the top-level folders onto the project's own import names.

The design card fixes the top level (``backend/``, ``protocol/``, ...), but the
installed names must be unique to the project: ``backend/`` installs as
``impasto.backend``, never as a bare ``backend`` in site-packages.  Metadata
lives in pyproject.toml; only this mapping needs code (sub-packages are found
automatically so nobody has to list them by hand).
"""
from setuptools import find_packages, setup

ROOTS = ["backend", "protocol", "plugin_krita", "plugin_gimp", "desktop"]

packages, package_dir = [], {}
for root in ROOTS:
    package_dir[f"impasto.{root}"] = root
    packages.append(f"impasto.{root}")
    for sub in find_packages(root):
        packages.append(f"impasto.{root}.{sub}")
        package_dir[f"impasto.{root}.{sub}"] = f"{root}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    include_package_data=True,
    # assets/ is data, not a package: list it explicitly or wheels ship without
    # the starter model and the SD1.5 configs.
    package_data={
        "": ["*.json", "*.txt", "*.md", "*.safetensors", "*.desktop", "*.action", "*.png", "*.html"],
        "impasto.backend": ["assets/**/*.json", "assets/**/*.txt", "assets/**/*.safetensors", "assets/**/*.py",
                            "assets/**/*.md"],
    },
    zip_safe=False,
)
