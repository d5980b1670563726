"""Example pipelines that ship with nbpipe (run: ``python -m nbpipe.examples.digits``)."""
