"""A rendered Docker stack created on a real Docker engine (driver.py) with images built locally from
Debian's packages (scripts/build-images), and the tests that check it from outside the containers."""
