module chanq.invalid/bench/go

go 1.19
