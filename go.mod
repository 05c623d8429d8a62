module github.com/llmtap/llmtap

go 1.22
