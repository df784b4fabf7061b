module chanq.invalid/chanq

go 1.19
