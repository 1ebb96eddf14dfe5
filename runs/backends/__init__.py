"""OpenAI API backends behind one small interface (``base.Backend``), looked up by name in
``registry``. Import from the submodules; this package module imports nothing, so loading the
interface never loads every API."""
