module chanq.invalid/bench/goworker

go 1.19

require chanq.invalid/chanq v0.0.0

replace chanq.invalid/chanq => ../../clients/go
