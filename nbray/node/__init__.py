"""Starting and finding nodes: session directories, processes, resources."""
