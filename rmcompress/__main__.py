from rmcompress.cli import entry

entry()
