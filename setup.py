from glob import glob

from setuptools import find_packages, setup

setup(
    name="neochat",
    version="0.1.0",
    description="NeoChat: a Twisted chat server suite (message server, FTP files, UDP calls)",
    python_requires=">=3.11",
    # twisted/plugins/ has no __init__.py: twistd finds neochat_plugin.py in
    # any twisted/plugins directory on sys.path.  package_dir {"": "."} makes
    # `pip install -e .` put the checkout on sys.path (as compat mode does),
    # and a normal install copies the plugin into site-packages/twisted/plugins.
    package_dir={"": "."},
    packages=find_packages(include=["neochat", "neochat.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/neochat_plugin.py"], "neochat.web": ["static/*"]},
    data_files=[
        ("share/neochat/schema", glob("schema/*.sql")),
    ],
    install_requires=[
        "Twisted[tls]>=23.8",
        "pyftpdlib>=1.5.9",
        "argon2-cffi>=21.3",
        "prometheus_client>=0.17",
        "textual>=0.80",  # the terminal client, neochat-client
        "autobahn>=24.4",  # the WebSocket gateway of the web client
        "orjson>=3.9",  # the JSON dialect's codec (neochat/wire/json_stream.py)
    ],
    entry_points={"console_scripts": [
        "neochatctl = neochat.admin.cli:main",
        "neochat-client = neochat.client.cli:main",
    ]},
    extras_require={
        "mysql": ["mysqlclient>=2.1"],
        "cluster": ["txredisapi>=1.4.10"],
        # playwright drives Debian's chromium in the browser tests; it never downloads a browser.
        "test": ["pytest>=7", "pytest-twisted>=1.14", "hypothesis>=6", "psutil>=5.9", "atheris>=2.3",
                 "playwright>=1.40"],
    },
)
