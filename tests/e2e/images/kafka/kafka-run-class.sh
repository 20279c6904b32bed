#!/bin/sh
# What Kafka's bin/kafka-run-class.sh does for a release, and reads the same variables:
# KAFKA_HEAP_OPTS (default -Xmx256M), KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS (default: the
# tools' logging, warnings to stderr), KAFKA_OPTS. The broker (kafka.Kafka) gets the defaults of
# bin/kafka-server-start.sh instead: a 1 GiB heap and the broker's logging.
class="$1"
shift
if [ "$class" = kafka.Kafka ]; then
    heap_default="-Xmx1G -Xms1G"
    log4j_default="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml"
else
    heap_default="-Xmx256M"
    log4j_default="-Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml"
fi
# shellcheck disable=SC2086 # the *_OPTS variables hold several words on purpose
exec java ${KAFKA_HEAP_OPTS:-$heap_default} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
    ${KAFKA_LOG4J_OPTS:-$log4j_default} ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$class" "$@"
