"""Install the course library exported by nbdev from `nbs/` into `lib/deepgen`."""
from configparser import ConfigParser
from setuptools import find_packages, setup

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini")
cfg = cfg["DEFAULT"]

setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    license="Apache-2.0",
    python_requires=">=" + cfg["min_python"],
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    # Pinned versions live in requirements.txt; these are the imports the library needs.
    install_requires=["torch", "torchvision", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
                      "pyyaml", "tqdm", "papermill", "tabulate"],
    entry_points={
        "console_scripts": ["deepgen-run=deepgen.config:run_main", "deepgen-data=deepgen.data:fetch_main",
                            "deepgen-bench=deepgen.bench:bench_main"],
        "nbdev": [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
    },
)
