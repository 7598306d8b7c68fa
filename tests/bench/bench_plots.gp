# Plots of bench_transports' data files; run in the output directory:
#   cd docs/performance && gnuplot ../../tests/bench/bench_plots.gp
# Bars are the median over the runs, error bars the runs' min-max.
set terminal pngcairo size 1100,620 font "sans,11" noenhanced
set datafile missing "-"
set datafile separator whitespace
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics mytics
set key top left
set xtics rotate by -20

set output "rtt.png"
set title "Round trip, busy-poll, across cores (median p50; bars: min-max of the runs)"
set ylabel "microseconds (log)"
set logscale y
plot "rtt.dat" using 2:3:4:xtic(1) title "64 B", \
     "" using 5:6:7 title "4 MiB, header only", \
     "" using 8:9:10 title "4 MiB, every byte written and read"

set output "block.png"
set title "Blocking: round trip same core, round trip across cores, wake-up after a real sleep (p50)"
plot "block.dat" using 2:3:4:xtic(1) title "round trip, same core", \
     "" using 5:6:7 title "round trip, across cores", \
     "" using 8:9:10 title "wake-up after sleep (one wake)"

set output "stream.png"
set title "One-way streaming, 64 B, busy-poll (median rate; bars: min-max)"
set ylabel "million messages per second (log)"
plot "stream.dat" using 2:3:4:xtic(1) title "one consumer", \
     "" using 5:6:7 title "two consumers (fan-out, per consumer)"

set output "sorted.png"
set title "mbq: FIFO vs sorted by PTS, 64 B streaming"
unset logscale y
set yrange [0:*]
plot "sorted.dat" using 2:3:4:xtic(1) title "rate"
set autoscale y

set output "pool.png"
set title "Allocate + free 4 MiB, one process (median; bars: min-max)"
set ylabel "microseconds per allocate+free (log)"
set logscale y
plot "pool.dat" using 2:3:4:xtic(1) title "allocate + (touch) + free"

# distributions: each block of the file is one transport
set style data lines
unset style
set xtics norotate
set key bottom right
set ylabel "percentile"
unset logscale y
set yrange [0:100]
set logscale x
set output "cdf_rtt64.png"
set title "Round trip 64 B, busy-poll: distribution of one run (the median run)"
set xlabel "microseconds (log)"
plot for [i=0:*] "cdf_rtt64.dat" index i using 2:1 with lines lw 2 title columnheader(1)
set output "cdf_wake.png"
set title "Wake-up after a real sleep: distribution of one run (the median run)"
plot for [i=0:*] "cdf_wake.dat" index i using 2:1 with lines lw 2 title columnheader(1)
