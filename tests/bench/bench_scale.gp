# Plots of bench_scale's curves; run in the output directory:
#   cd docs/performance && gnuplot ../../tests/bench/bench_scale.gp
# Points are the median over the repetitions, error bars their min-max.
set terminal pngcairo size 1000,560 font "sans,11" noenhanced
set grid
set key top left
set logscale x 2
set style data yerrorlines

set output "scale_fanout.png"
set title "Fan-out: one producer, one buffer into N queues, 64 B (busy-poll)"
set xlabel "queues each buffer is enqueued into"
set ylabel "producer ns per message (failed attempts excluded)"
set y2label "messages per second (millions)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "scale_fanout.dat" using 1:5:6:7 title "producer ns per message" lw 2, \
     "" using 1:($2/1e6):($3/1e6):($4/1e6) axes x1y2 title "rate (M msg/s, right)" lw 2
unset y2tics
unset y2label
set ytics mirror

set logscale x 10
set output "scale_epoll.png"
set title "N queues watched through one mbq_dispatcher (epoll): wake-up after a real sleep"
set xlabel "queues, each with a \"count > 0\" trigger, in one dispatcher"
set ylabel "microseconds"
plot "scale_epoll.dat" using 1:($2/1e3):($3/1e3):($4/1e3) title "wake latency p50 (enqueue → callback → dequeued)" lw 2, \
     "" using 1:5:6:7 title "consumer CPU per message" lw 2

set output "scale_objects.png"
set title "Objects in one mbqd (buffer queues, capacity 16)"
set xlabel "objects"
set logscale y 10
set yrange [*:*]
set ylabel "time (log)"
plot "scale_objects.dat" using 1:2:3:4 title "create, µs each" lw 2, \
     "" using 1:5:6:7 title "open + close by name, µs" lw 2, \
     "" using 1:8:9:10 title "mbq_list of all, ms" lw 2, \
     "" using 1:11:12:13 title "mbqctl list (a process), ms" lw 2, \
     "" using 1:14:15:16 title "mbqd RSS per object, KiB" lw 2
unset logscale y

set logscale x 4
set output "scale_clients.png"
set title "Connected clients (each a process with one queue open)"
set xlabel "connected client processes"
set ylabel "value"
set yrange [0:*]
plot "scale_clients.dat" using 1:2:3:4 title "control round trip (mbq_stat of a pool), µs p50" lw 2, \
     "" using 1:11:12:13 title "mbq_stat of the queue every client has open, µs p50" lw 2, \
     "" using 1:5:6:7 title "reclaim after kill -9, ms" lw 2
