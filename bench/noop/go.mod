module github.com/llmtap/noop

go 1.22
