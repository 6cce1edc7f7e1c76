"""The local stack's modules; tools/stack_tool.py is the public face (see its docstring)."""
