// Nested module: it may require Yaegi, which the plugin's root module must not.
module github.com/llmtap/llmtap/tools/yaegibench

go 1.26

require github.com/traefik/yaegi v0.16.1
