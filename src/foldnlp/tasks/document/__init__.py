"""What document classification and regression share: reading document tables, windows over long documents
(head, head+tail, strided windows), the pooled head and the combination of window outputs per document. Not a task
itself: the tasks are foldnlp.tasks.classify and foldnlp.tasks.regress."""
