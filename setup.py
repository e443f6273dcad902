from glob import glob

from setuptools import find_packages, setup

setup(
    name="neochat",
    version="0.1.0",
    description="NeoChat: a Twisted chat server suite (message server, FTP files, UDP calls)",
    python_requires=">=3.11",
    packages=find_packages(include=["neochat", "neochat.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/neochat_plugin.py"]},
    data_files=[
        ("share/neochat/schema", glob("schema/*.sql")),
    ],
    install_requires=[
        "Twisted[tls]>=23.8",
        "pyftpdlib>=1.5.9",
        "argon2-cffi>=21.3",
        "textual>=0.80",  # the terminal client, neochat-client
    ],
    entry_points={"console_scripts": ["neochat-client = neochat.client.cli:main"]},
    extras_require={
        "mysql": ["mysqlclient>=2.1"],
        "cluster": ["txredisapi>=1.4.10"],
        "test": ["pytest>=7", "pytest-twisted>=1.14", "hypothesis>=6", "psutil>=5.9"],
    },
)
