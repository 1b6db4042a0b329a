"""The distill-squad objective: distil a SQuAD 2.0 question-answering teacher into a smaller student."""  # noqa: E501
